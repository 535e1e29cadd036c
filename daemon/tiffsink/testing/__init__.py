"""Test hooks compiled into tiffsink: fault injection that is free when unset."""
