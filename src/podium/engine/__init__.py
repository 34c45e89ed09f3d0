"""Training and prediction machinery: the LightningModule, its callbacks and loggers, one fold's loader, module and
trainer, and prediction with a fold's model. Works on explicit arguments; the run folder through podium.run."""
