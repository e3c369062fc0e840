"""bitbd's built-in plugins, registered through the `bitbd` entry-point group like third-party ones."""
