"""Record databases of the simulated beamline served by EPICS base's softIoc (data only)."""
