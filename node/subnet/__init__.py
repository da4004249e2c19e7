"""Once-for-All subnet selection for this device, and the device profiles it measures against."""
