"""Write the ``clutter`` set as MNIST-style IDX files: a real-size set (60,000 training and
10,000 test images, 28×28 grey, 10 classes by default) read through a supported format.

Run: ``python benchmarks/make_idx_set.py --idx /tmp/clutter-idx [--n 60000] [--test 10000]
[--size 28] [--classes 10]``, then ``automl-cnn search --dataset mnist:/tmp/clutter-idx``.
"""

from __future__ import annotations

from automl_cnn.data.clutter import main

if __name__ == "__main__":
    main()
