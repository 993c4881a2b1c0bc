"""How work reaches the GPU: host-driven launches (and, later, device-driven persistent kernels)."""
