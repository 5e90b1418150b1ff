"""Module-path shim: the seed project's ``abathur`` package, served by abathur_memkit."""
