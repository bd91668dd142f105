"""The adversarial suite: faults, hostile servers, bad input and leaks vs. the three promises."""
