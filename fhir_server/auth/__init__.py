"""SMART on FHIR in this server: the authorization server and what it needs.

The sign-in side (this package's `users`, `roles`, `sessions`, `flow`, `pickers`,
`consent`, `launch`, `pages` and `templates/`) serves the browser during an authorize
request: sign in, pick a patient or an encounter, consent, and the EHR-launch entry. It
depends on the OAuth protocol side only through `authorize.AuthorizationServer`. Nothing
here imports a web framework; `fhir_server.api.auth_ui_routes` serves it over HTTP.
"""
