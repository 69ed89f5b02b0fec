"""SMART on FHIR in this server: the authorization server and the resource server's checks.

The resource server side (this package's `bearer`, `scopes`, `policy`, `matching`) plugs
into the access seam of `fhir_server.context`: the HTTP adapter turns a verified RFC 9068
access token into an `AccessContext` (`bearer.BearerVerifier`), and the service's
`AccessPolicy` is a `policy.SmartPolicy` that answers, for every interaction and every
resource it touches, whether the token's scopes cover it. No interaction module knows
about OAuth: they ask the policy, as they always did.

Authorization can be turned off (`FHIR_AUTH=off`) for local experiments only: every
caller then acts as the anonymous user with every right, and `serve` refuses a
non-loopback address.
"""
