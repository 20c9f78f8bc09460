"""The review consumer: the verdicts topic materialised into the review database, exactly once."""
