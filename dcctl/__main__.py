from dcctl.cli.main import run

run()
