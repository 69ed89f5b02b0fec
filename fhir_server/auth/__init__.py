"""SMART on FHIR 2.2 in this server: an OAuth 2.0 authorization server and the checks of
the resource server, behind the `AccessContext` / `AccessPolicy` seam of `fhir_server.context`.

The resource server side (`bearer`, `scopes`, `policy`, `matching`): the HTTP adapter turns a
verified RFC 9068 access token into an `AccessContext` (`bearer.BearerVerifier`), and the
service's `AccessPolicy` is a `policy.SmartPolicy` that answers, for every interaction and
every resource it touches, whether the token's scopes cover it. No interaction module knows
about OAuth: they ask the policy, as they always did. Authorization can be turned off
(`FHIR_AUTH=off`) for local experiments only: every caller then acts as the anonymous user
with every right, and `serve` refuses a non-loopback address.

Authorization server (under `/auth`, the issuer is `{origin}/auth`):

    store.py       AuthStore: clients, users, keys, codes, refresh families, revoked and
                   used jtis (SQLite `<database>.auth.db`, or `auth_*` collections in MongoDB)
    keys.py        KeyRing: RSA signing keys with rotation; the public JWKS
    clients.py     registered clients (public, symmetric, asymmetric) and their scopes
    assertions.py  RFC 7523 client assertions (private_key_jwt: RS384, ES384, ...)
    tokens.py      RFC 9068 access tokens, id_tokens, rotating refresh tokens
    grants.py      authlib's grants and endpoints with SMART's overrides (PKCE S256 only...)
    server.py      SmartAuthServer: authlib's AuthorizationServer, subclassed; the token,
                   introspection and revocation endpoints and the authorize protocol
    registration.py  RFC 7591 dynamic registration behind an operator's registration token
    discovery.py   .well-known/smart-configuration, OpenID configuration, rest.security
    urls.py        the absolute URLs of all of it

The sign-in side (`users`, `roles`, `sessions`, `flow`, `pickers`, `consent`, `launch`,
`pages` and `templates/`) serves the browser during an authorize request: sign in, pick a
patient or an encounter, consent, and the EHR-launch entry; `manage` lists the apps a user
has authorized and revokes them. It depends on the OAuth
protocol side only through `authorize.AuthorizationServer`.

Access tokens are self-contained JWTs: the resource server verifies them with the public
JWKS (cached) and a revoked-jti set it refreshes from the store, with no database lookup
per request. The package is framework-free: `fhir_server.api` adapts it to HTTP and
`fhir_server.cli.auth` to the command line.
"""
