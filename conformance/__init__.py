"""A conformance kit: checks, runnable against any FHIR R4 base URL, that a server does
what its CapabilityStatement claims (interactions, search parameters, operations, formats).

Empty until its issue lands. It will talk to a server over HTTP only, so it imports
nothing from `fhir_server` and can test this server and others alike.
"""
