"""Messages to holders through their registered contacts."""
