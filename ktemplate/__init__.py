"""ktemplate: Keras 3 application templates."""
