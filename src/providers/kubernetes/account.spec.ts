import { kubeConfigOf, kubernetesAccountId, kubernetesAccountIn, kubernetesAccountOf, sealKubernetesAccount } from './account';

const kubeconfig = (user: string, extraContexts = '') => `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://k8s.example.com:6443
    certificate-authority-data: ZmFrZQ==
users:
- name: sa
  user:
${user}
contexts:
- name: prod
  context: { cluster: prod, user: sa }
${extraContexts}current-context: prod
`;
const TOKEN = '    token: eyJhbGciOi.fake.token';

describe('kubernetesAccountOf', () => {
  it('should take a token or a client certificate and name the account by server and namespace', () => {
    const a = kubernetesAccountOf({ kubeconfig: kubeconfig(TOKEN), namespace: 'inference' });
    expect(kubernetesAccountId(a)).toBe('k8s.example.com:6443/inference');
    const cert = kubeconfig('    client-certificate-data: ZmFrZQ==\n    client-key-data: ZmFrZQ==');
    expect(kubernetesAccountOf({ kubeconfig: cert, namespace: 'inference' }).namespace).toBe('inference');
  });

  it('should select the given context and refuse one the kubeconfig lacks, listing those it has', () => {
    const two = kubeconfig(TOKEN, '- name: staging\n  context: { cluster: prod, user: sa, namespace: s }\n');
    expect(kubeConfigOf({ kubeconfig: two, context: 'staging' }).getCurrentContext()).toBe('staging');
    expect(() => kubernetesAccountOf({ kubeconfig: two, namespace: 'x', context: 'dev' })).toThrow(
      'context: the kubeconfig has no context "dev" (it has prod, staging)',
    );
  });

  it.each([
    ['an exec plugin', '    exec: { apiVersion: client.authentication.k8s.io/v1beta1, command: aws }', /authenticates with an exec plugin/],
    ['an auth-provider', '    auth-provider: { name: gcp }', /authenticates with an auth-provider plugin/],
    ['no credential at all', '    username: admin', /its user has no static credential/],
    [
      'a certificate by file',
      '    client-certificate: /home/me/.kube/cert.pem\n    client-key: /home/me/.kube/key.pem',
      /inline them as \*-data/,
    ],
  ])('should refuse %s, naming the kubeconfig', (_name, user, message) => {
    expect(() => kubernetesAccountOf({ kubeconfig: kubeconfig(user), namespace: 'ml' })).toThrow(message);
  });

  it.each([
    [{ namespace: '' }, /^namespace: a Kubernetes CUSTOM credential needs the namespace/],
    [{ namespace: 'Has_Caps' }, /^namespace: "Has_Caps" is not a namespace name/],
    [{ kubeconfig: '  ' }, /^kubeconfig: must not be empty/],
    [{ urlTemplate: 'https://inference.example.com' }, /^urlTemplate: must contain \{name\}/],
    [{ urlTemplate: 'ftp://{name}.example.com' }, /^urlTemplate: ftp: is not http: or https:/],
  ])('should refuse %j with the field named', (over, message) => {
    expect(() => kubernetesAccountOf({ kubeconfig: kubeconfig(TOKEN), namespace: 'ml', ...over })).toThrow(message);
  });

  it('should refuse a plain-http server unless the kubeconfig skips TLS verification', () => {
    const http = kubeconfig(TOKEN).replace('https://k8s.example.com:6443', 'http://10.0.0.1:8080');
    expect(() => kubernetesAccountOf({ kubeconfig: http, namespace: 'ml' })).toThrow(
      'kubeconfig: cluster prod is served over plain http (http://10.0.0.1:8080): use https, or set insecure-skip-tls-verify: true',
    );
    const skip = http.replace('certificate-authority-data: ZmFrZQ==', 'insecure-skip-tls-verify: true');
    expect(kubernetesAccountOf({ kubeconfig: skip, namespace: 'ml' }).namespace).toBe('ml');
  });

  it('should seal to JSON that reads back, and not take a bare-box credential for one', () => {
    const a = kubernetesAccountOf({ kubeconfig: kubeconfig(TOKEN), namespace: 'ml', urlTemplate: 'https://{name}.x.example.com' });
    expect(kubernetesAccountIn(sealKubernetesAccount(a))).toEqual(a);
    expect(kubernetesAccountIn(JSON.stringify({ endpoints: [{ url: 'http://10.0.0.5:8000', apiKey: null }] }))).toBeNull();
    expect(kubernetesAccountIn('rpa_plain_key')).toBeNull();
  });
});
