"""Models, losses, optimizers and the epoch loop: training with no web and no database."""
