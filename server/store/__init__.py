"""Store functions: the only code that reads and writes the database.

Routes call these; they never commit (the session dependency does).
"""
