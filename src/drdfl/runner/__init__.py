"""The experiment as a graph of units, run locally or on Ray."""
