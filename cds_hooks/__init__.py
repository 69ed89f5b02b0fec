"""CDS Hooks (https://cds-hooks.hl7.org/2.0/): the discovery endpoint and the CDS services an
EHR calls during its workflow (e.g. `patient-view`), answering with cards.

The protocol layer, framework-free (the HTTP routes are `fhir_server.api.cds_routes`):

    service.py         what a service is (definition, hook call, cards): the shared interface
    registry.py        the services offered (`CdsServices`) and where packages plug in
    endpoint.py        discovery, hook calls and feedback behind the HTTP routes
    hook_request.py    the checks of a hook call's body (400s)
    client_auth.py     the CDS client's JWT (401s); jwks.py: their JWK sets by URL, cached
    prefetch.py        templates, and fetching what the client did not send (412s)
    response_check.py  a service's answer checked against the spec before it is sent
    feedback.py        card outcomes; store.py: clients, used jtis and feedback

Services never fetch data: their prefetch is resolved before they run. The plug-in is
built by `fhir_server.assembly.open_cds`, like every other.
"""
