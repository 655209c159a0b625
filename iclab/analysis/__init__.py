"""Analyses of trained models: probes, layer surgery, loss landscapes (built next; see the issues)."""
