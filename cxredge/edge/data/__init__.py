"""Images and datasets in: decoding, class folders and tables, what bench/predict/export read. TF-free."""
