from latencylab.cli import app

app()
