"""Training objectives, one module per paper (weak matching loss, SFNet's mask/flow consistency, MMNet's multi-scale keypoint loss)."""
