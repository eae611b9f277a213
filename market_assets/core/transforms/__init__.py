"""Pure transforms over canonical frames: resampling, adjustment, indicators."""
