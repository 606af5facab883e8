// The console: sign in with a management token, the deployments list, a deployment's page, the playground.
// Routing is by the URL's hash (#/deployments/dep_...), so the api serves one index.html and no token is ever in a path.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { gql, token } from './api';
import { DeploymentPage, DeploymentsPage } from './deployments';
import { PlaygroundPage } from './playground';
import './style.css';

export interface Me {
  id: string;
  name: string;
  plan: string;
}

const ME = `query { workspace { id name plan } }`;

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function SignIn(props: { onIn: (me: Me) => void }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const { workspace } = await gql<{ workspace: Me }>(ME, {}, value.trim());
      token.set(value.trim());
      props.onIn(workspace);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <main class="signin">
      <h1>infer-control-plane</h1>
      <form onSubmit={submit} data-testid="signin">
        <label>
          Management token
          <input
            type="password"
            autoComplete="off"
            name="token"
            placeholder="mt_…"
            value={value}
            onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          />
        </label>
        <button type="submit" disabled={!value.trim()}>
          Sign in
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="hint">The token is kept in this tab's session storage only, and sent only to this api.</p>
      </form>
    </main>
  );
}

function App() {
  const [me, setMe] = useState<Me | null>(null);
  const [checked, setChecked] = useState(false);
  const hash = useHash();

  useEffect(() => {
    const out = () => {
      token.clear();
      setMe(null);
    };
    window.addEventListener('infercp:signed-out', out);
    if (token.get())
      gql<{ workspace: Me }>(ME)
        .then((d) => setMe(d.workspace))
        .catch(out)
        .finally(() => setChecked(true));
    else setChecked(true);
    return () => window.removeEventListener('infercp:signed-out', out);
  }, []);

  if (!checked) return null;
  if (!me) return <SignIn onIn={setMe} />;
  const [, page, id] = hash.replace(/^#/, '').split('/');
  return (
    <>
      <header class="top">
        <strong>infer-control-plane</strong>
        <nav>
          <a href="#/deployments" class={page !== 'playground' ? 'on' : ''}>
            Deployments
          </a>
          <a href="#/playground" class={page === 'playground' ? 'on' : ''}>
            Playground
          </a>
        </nav>
        <span class="who" data-testid="workspace">
          {me.name} · {me.plan}
        </span>
        <button
          class="link"
          onClick={() => {
            token.clear();
            setMe(null);
          }}
        >
          Sign out
        </button>
      </header>
      {page === 'playground' ? (
        <PlaygroundPage me={me} />
      ) : page === 'deployments' && id ? (
        <DeploymentPage id={id} />
      ) : (
        <DeploymentsPage me={me} />
      )}
    </>
  );
}

render(<App />, document.getElementById('app')!);
