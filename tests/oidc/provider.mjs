// A real OpenID Connect provider for the SSO tests: npm `oidc-provider`
// (installed by scripts/test under target/oidc-provider), on a free
// loopback port, with one static confidential client and a small
// password login that plain HTTP requests (or a browser) can complete.
// Consent is granted for the client without asking (a first-party app).
//
// Environment: OIDC_PROVIDER_DIR (where node_modules/oidc-provider is),
// REDIRECT_URI and POST_LOGOUT_REDIRECT_URI (the gateway's), CLIENT_ID,
// CLIENT_SECRET, and CLIENT_AUTH (the one token endpoint authentication
// method the provider takes; default client_secret_basic). Prints one JSON line {"issuer": ...} once it listens,
// then serves until killed.
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.OIDC_PROVIDER_DIR;
const entry = path.join(dir, 'node_modules/oidc-provider/lib/index.js');
const { default: Provider } = await import(pathToFileURL(entry).href);

const USERS = {
  alice: { password: 'alice-pw', email: 'alice@example.com', name: 'Alice Example' },
  bob: { password: 'bob-pw', email: 'bob@example.com', name: 'Bob Example' },
};

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, message) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><main><h1>Test IdP</h1>${message ? `<p id="error">${esc(message)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<label for="login">User</label> <input id="login" name="login" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>
</main></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

const clientAuth = process.env.CLIENT_AUTH || 'client_secret_basic';

let provider;
const server = http.createServer(async (req, res) => {
  // oidc-provider also takes a client that authenticates another way than
  // it registered; strict providers do not, so neither does this one.
  if (clientAuth === 'client_secret_post' && req.url.startsWith('/token') && req.headers.authorization) {
    res.writeHead(401, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: 'invalid_client', error_description: 'client_secret_post only' }));
  }
  const m = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/);
  if (!m) return provider.callback()(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(details.uid));
    }
    if (m[2] === '/abort') {
      return await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'The user cancelled the sign-in.',
      }, { mergeWithLastSubmission: false });
    }
    const form = await readForm(req);
    const user = USERS[form.get('login')];
    if (!user || user.password !== form.get('password')) {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(details.uid, 'Wrong user or password.'));
    }
    await provider.interactionFinished(req, res, { login: { accountId: form.get('login') } }, {
      mergeWithLastSubmission: false,
    });
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${e.message}`);
  }
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clientAuthMethods: [clientAuth],
    clients: [{
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      post_logout_redirect_uris: [process.env.POST_LOGOUT_REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: clientAuth,
    }],
    cookies: { keys: ['amesh-test-idp-cookie-key'] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Profile and email claims in the ID token itself, as most providers do.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = `<!doctype html><html><body>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button></body></html>`;
        },
      },
    },
    async findAccount(ctx, sub) {
      const user = USERS[sub];
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, email: user.email, email_verified: true, name: user.name };
        },
      };
    },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  console.log(JSON.stringify({ issuer }));
});
