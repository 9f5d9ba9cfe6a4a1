from automl_cnn.cli import entry

entry()
