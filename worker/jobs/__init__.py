"""Job runners: load by id, call plain functions, write results in short transactions."""
