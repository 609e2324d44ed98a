"""API routes: thin handlers over ``server.store``."""
