from zlperf.cli import run

run()
