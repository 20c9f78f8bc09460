"""The review station: server-rendered pages of the facade under /review, where operators confirm or
correct flagged cells and engineers roll models back (`routes.install` mounts them)."""
