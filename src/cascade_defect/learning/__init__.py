"""The learning loop (offline): labelled frames from the decision log retrain Layer 2 (`learn`), and a
simulated stream measures the loop (`simulate`). May use evaluation/; nothing at runtime imports it."""
