"""Control plane for DatasetJob: the Kopf operator. Imports the data plane, never the reverse."""
