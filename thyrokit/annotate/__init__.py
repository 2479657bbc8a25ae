"""Labels: sidecar labels, pre-label model, active-learning order, pseudolabels, Label Studio."""
