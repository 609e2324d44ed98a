"""The job queue: lifecycle transitions, leasing in SQL, job kinds, the reaper."""
