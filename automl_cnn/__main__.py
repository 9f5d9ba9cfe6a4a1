import sys

from automl_cnn.cli import main

sys.exit(main())
