"""The commands: each orchestrates one `podium` command over the layers below and returns its result."""
