"""Development tooling that gives the app's event handlers Lambda's semantics off AWS."""
