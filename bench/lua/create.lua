-- Create: POST /fhir/Patient with a fresh MRN per request.
request = create_request
