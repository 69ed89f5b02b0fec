-- Read by id: GET /fhir/Patient/{id} over the loaded Patient ids.
request = read_request
