import type { Browser, Page } from 'playwright-core';
import { CREATE_VARIANT, createPipeline, Gql, must } from '../support/graphql';
import { launch, screenshot, watch } from '../support/browser';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

/**
 * The console in headless Chromium against the real api, worker, Temporal and replicas: sign in, deploy from a
 * pipeline, watch the status reach ACTIVE, see the replica chart move under a burst, stop and start from the page,
 * run the playground and compare two variants; a Starter workspace hits its playground quota. Screenshots of each
 * page go to test/artifacts/screenshots/.
 */
describe('console (browser)', () => {
  let stack: Stack;
  let browser: Browser;
  let team: { id: string; token: string };
  let gql: Gql;
  let page: Page;

  beforeAll(async () => {
    stack = await startStack({ env: { METRICS_FLUSH_INTERVAL_MS: '500', PLAYGROUND_STARTER_DAILY_REQUESTS: '2' } });
    browser = await launch();
    team = await stack.workspace('TEAM', 'acme');
    gql = stack.as(team.token);
    await createPipeline(gql, { name: 'support-bot' });
    page = watch(await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage());
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  const statusIs = (p: Page, status: string) =>
    p.locator('.head [data-testid=status]', { hasText: new RegExp(`^${status}$`) }).waitFor({ timeout: 60_000 });
  // A chart's canvas has no text: its figure carries the highest value of each series (data-max).
  const chartMaxAtLeast = (p: Page, testId: string, series: number, atLeast: number) =>
    eventually(async () => {
      const max = await p.getAttribute(`[data-testid=${testId}]`, 'data-max');
      return max !== null && (JSON.parse(max) as number[])[series] >= atLeast;
    }, 60_000);
  const confirm = async (p: Page, button: string) => {
    await p.click(`[data-testid=${button}]`);
    await p.click('[data-testid=confirm-yes]');
    await p.locator('[data-testid=action-result]').waitFor();
  };

  it('should refuse a wrong token and sign in with the right one, keeping it out of the URL and localStorage', async () => {
    await page.goto(`${stack.url}/console/`);
    await page.fill('input[name=token]', 'mt_wrongwrongwrongwrong');
    await page.click('button[type=submit]');
    await page.locator('[role=alert]', { hasText: 'invalid or revoked management token' }).waitFor();
    await screenshot(page, '01-sign-in-refused');
    await page.fill('input[name=token]', team.token);
    await page.click('button[type=submit]');
    await page.locator('[data-testid=workspace]', { hasText: 'acme · TEAM' }).waitFor();
    expect(page.url()).not.toContain(team.token);
    expect(await page.evaluate(() => [localStorage.length, sessionStorage.getItem('infercp.managementToken')])).toEqual([0, team.token]);
  });

  let deploymentId: string;
  let apiKey: string;

  it('should deploy from a pipeline and show the status reaching ACTIVE', async () => {
    await page.fill('[data-testid=deploy-form] input[name=max]', '3');
    await page.click('[data-testid=deploy-form] button[type=submit]');
    const box = page.locator('[data-testid=new-key]');
    await box.waitFor();
    apiKey = (await box.locator('code').innerText()).trim();
    expect(apiKey).toMatch(/^sk_/);
    await screenshot(page, '02-deployments-new-key');
    deploymentId = (await box.locator('a').innerText()).trim();
    await page.locator(`[data-testid=deployment-${deploymentId}] [data-testid=status]`, { hasText: 'ACTIVE' }).waitFor({ timeout: 60_000 });
    await screenshot(page, '03-deployments-list');
    await page.click(`a[href="#/deployments/${deploymentId}"] >> nth=0`);
    await statusIs(page, 'ACTIVE');
  });

  it('should move the replica chart under a burst after the target concurrency is lowered from the page', async () => {
    await page.fill('[data-testid=actions] input[name=targetConcurrency]', '2');
    await page.click('[data-testid=actions] button:has-text("Apply scaling")');
    await page.click('[data-testid=confirm-yes]');
    await page.locator('[data-testid=action-result].ok').waitFor();
    // 12 long streams at once: 6 replicas' worth at a target of 2, capped at 3.
    const burst = Array.from({ length: 12 }, (_, i) =>
      fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'default', stream: true, max_tokens: 1500, messages: [{ role: 'user', content: `burst ${i}` }] }),
      }).then((r) => r.text()),
    );
    await chartMaxAtLeast(page, 'chart-replicas', 0, 2);
    await chartMaxAtLeast(page, 'chart-inflight', 0, 2);
    await page.locator('[data-testid=decisions] li').first().waitFor();
    await page.locator('[data-testid=logs] pre', { hasText: 'simulator ready' }).waitFor();
    await screenshot(page, '04-deployment-under-burst');
    await Promise.all(burst);
  });

  it('should stop and start the deployment from the page, each behind a confirmation, with operations linked to Temporal', async () => {
    await confirm(page, 'action-stop');
    await statusIs(page, 'STOPPED');
    await screenshot(page, '05-deployment-stopped');
    await confirm(page, 'action-start');
    await statusIs(page, 'ACTIVE');
    const link = page.locator('[data-testid=operations] a', { hasText: `op:${deploymentId}` }).first();
    expect(await link.getAttribute('href')).toMatch(
      new RegExp(`^http://127\\.0\\.0\\.1:8233/namespaces/default/workflows/op%3A${deploymentId}%3A`),
    );
    // A second start while ACTIVE: the refusal is shown, not swallowed.
    await confirm(page, 'action-start');
    await page.locator('[data-testid=action-result].error').waitFor();
    expect(await page.locator('[data-testid=action-result]').innerText()).toMatch(/ACTIVE/);
  });

  it('should run the playground and compare two variants side by side on one prompt', async () => {
    const pipelineId = (
      await must(
        gql<{ deployment: { pipelineId: string } }>(`query($id: ID!) { deployment(id: $id) { pipelineId } }`, { id: deploymentId }),
      )
    ).deployment.pipelineId;
    const { createVariant } = await must(
      gql<{ createVariant: { id: string } }>(CREATE_VARIANT, { pipelineId, input: { name: 'large', gpu: 'sim-large', engine: 'sim' } }),
    );
    const { deployPipeline } = await must(
      gql<{ deployPipeline: { deployment: { id: string } } }>(
        `mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id } } }`,
        {
          input: { pipelineId, variantId: createVariant.id, target: 'LOCAL', gpu: 'sim-large', minReplicas: 1, maxReplicas: 1 },
        },
      ),
    );
    const other = deployPipeline.deployment.id;
    await eventually(async () => {
      const { deployment } = await must(
        gql<{ deployment: { status: string } }>(`query($id: ID!) { deployment(id: $id) { status } }`, { id: other }),
      );
      return deployment.status === 'ACTIVE';
    }, 60_000);
    await page.goto(`${stack.url}/console/#/playground`);
    await page.locator(`select[name=a] option[value="${deploymentId}"]`).waitFor({ state: 'attached' });
    await page.selectOption('select[name=a]', deploymentId);
    await page.check('input[name=compare]');
    await page.locator(`select[name=b] option[value="${other}"]`).waitFor({ state: 'attached' });
    await page.selectOption('select[name=b]', other);
    await page.fill('input[name=maxTokens]', '16');
    await page.fill('textarea[name=prompt]', 'Which variant answers first?');
    await page.click('[data-testid=playground-form] button[type=submit]');
    for (const side of ['a', 'b']) {
      await page.locator(`[data-testid=answer-${side}] [data-testid=answer-stats]`).waitFor({ timeout: 60_000 });
      expect(await page.locator(`[data-testid=answer-${side}] [data-testid=completion-tokens]`).innerText()).toBe('16');
      expect(Number(await page.locator(`[data-testid=answer-${side}] [data-testid=prompt-tokens]`).innerText())).toBeGreaterThan(0);
      expect((await page.locator(`[data-testid=answer-${side}] [data-testid=answer-text]`).innerText()).length).toBeGreaterThan(0);
      expect(await page.locator(`[data-testid=answer-${side}] [data-testid=ttft]`).innerText()).toMatch(/ms|s$/);
    }
    await screenshot(page, '06-playground-compare');
  });

  it('should hold a Starter workspace to its playground quota with a clear message, the first request paying a cold start', async () => {
    const starter = await stack.workspace('STARTER', 'hobby');
    await createPipeline(stack.as(starter.token), { name: 'my-first-bot' });
    const p = watch(await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage());
    await p.goto(`${stack.url}/console/`);
    await p.fill('input[name=token]', starter.token);
    await p.click('button[type=submit]');
    await p.locator('[data-testid=workspace]', { hasText: 'hobby · STARTER' }).waitFor();
    await p.locator('text=Starter workspaces cannot deploy').waitFor();
    await p.goto(`${stack.url}/console/#/playground`);
    await p.locator('select[name=a] option').first().waitFor({ state: 'attached' });
    await p.fill('input[name=maxTokens]', '8');
    const send = () => p.click('[data-testid=playground-form] button[type=submit]:not([disabled])');
    await send();
    await p.locator('[data-testid=answer-a] [data-testid=answer-stats]').waitFor({ timeout: 60_000 });
    expect(await p.locator('[data-testid=answer-a] [data-testid=cold-start]').count()).toBe(1);
    await screenshot(p, '07-starter-playground-cold-start');
    await send();
    await p.locator('[data-testid=answer-a] [data-testid=answer-stats]').waitFor({ timeout: 60_000 });
    await send();
    const error = p.locator('[data-testid=answer-a] [data-testid=answer-error]');
    await error.waitFor();
    expect(await error.innerText()).toMatch(/Starter workspaces get 2 playground requests a day and this one has used them all/);
    await p.locator('[data-testid=quota]', { hasText: '2 of 2 playground requests used today' }).waitFor();
    await screenshot(p, '08-starter-quota-spent');
  });
});
