"""Storage engines behind one port (`base.Storage`): `sqlite` (the embedded default) and
`mongodb`. Which one a server uses is the assembly's choice (`assembly.make_storage`).
`leadership` elects, over the port's lease, the one process that runs background duties."""
