"""ciinv: edit the faces in whole folders of videos by joint StyleGAN inversion of consecutive frames."""

__version__ = "0.1.0"
