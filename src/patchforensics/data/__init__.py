"""Images to datasets: transforms and corruptions, samples and loaders, and the dataset builders (prepare, tfrecord, align, sample, gmm)."""
