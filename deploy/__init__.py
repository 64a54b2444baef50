"""Scripts and helpers to run HL on Flower's Deployment Engine (see docs/run-on-devices.md)."""
