"""tf.data input pipelines shared by the templates: sources, splits, statistics, augmentation."""
