-- Update: PUT /fhir/Patient/{id} of a loaded Patient, with a new MRN each time.
request = update_request
