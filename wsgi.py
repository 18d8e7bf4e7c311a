from dingqiao import create_app

app = create_app()
