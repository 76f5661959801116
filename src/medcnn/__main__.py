from medcnn.cli.main import entry

entry()
