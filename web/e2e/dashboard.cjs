// Drives the dashboard in headless Chromium (Debian's, through
// playwright-core) as a newcomer would: the namespaces, a namespace's
// workloads, a deployment's detail with its live calls, tap, top and the
// control plane. Saves a screenshot of each page and prints what it read
// as one JSON object; exits non-zero with the reason when a page fails.
//
// DASHBOARD_URL   the dashboard, e.g. http://localhost:50750
// SCREENSHOTS     where the PNGs go
// CHROMIUM        the browser (default /usr/bin/chromium)
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");

const url = process.env.DASHBOARD_URL;
const shots = process.env.SCREENSHOTS || ".";
const NS = "emojivoto";

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  // The dashboard works with no network: every request is to itself.
  page.on("request", (r) => {
    const u = r.url();
    const own = [url, process.env.GRAFANA_DASHBOARD_URL].filter(Boolean).some((o) => u.startsWith(o));
    if (!own && !u.startsWith("data:")) problems.push(`request to another origin: ${u}`);
  });
  const out = {};
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const cells = (rowSelector) => page.$$eval(rowSelector, (rows) => rows.map((r) => {
    const o = { name: r.dataset.name };
    for (const td of r.querySelectorAll("td[data-col]")) o[td.dataset.col] = td.textContent;
    return o;
  }));

  // The namespaces, with the demo's among them.
  await page.goto(`${url}/#/namespaces`);
  await page.waitForSelector(`table.stat tr[data-name="${NS}"]`, { timeout: 30000 });
  out.namespaces = await cells("table.stat tbody tr");
  await shot("namespaces");

  // The namespace's deployments, once Prometheus has their traffic, and
  // its charts, once they have a point (a minute of data: a point's window
  // reaching before the data began is left out).
  await page.goto(`${url}/#/namespaces/${NS}`);
  await page.waitForFunction(() => {
    const cell = document.querySelector('#section-deployment tr[data-name="web"] td[data-col="success"]');
    const line = document.querySelector('[data-chart="success"] path.line[data-name="web"]');
    return cell && cell.textContent.endsWith("%") && line;
  }, null, { timeout: 180000 });
  // The tables and the charts of one refresh, read together.
  [out.deployments, out.charts] = await Promise.all([
    cells("#section-deployment table.stat tbody tr"),
    page.$$eval("#charts path.line", (ps) => ps.map((p) => ({
      chart: p.closest(".chart").dataset.chart, name: p.dataset.name, last: Number(p.dataset.last),
      points: (p.getAttribute("d").match(/[ML]/g) || []).length,
    }))),
  ]);
  out.graph = {
    nodes: await page.$$eval("#graph g.node", (gs) => gs.map((g) => g.dataset.name)),
    edges: await page.$$eval("#graph path.edge", (ps) => ps.map((p) => ({ src: p.dataset.src, dst: p.dataset.dst, success: p.dataset.success, rps: p.dataset.rps }))),
  };
  out.chartLinks = await page.$$eval("#section-deployment a.charts-link", (as) => as.map((a) => a.getAttribute("href")));
  // Tells the test to run `linkerd stat` now, over the same window.
  process.stdout.write(JSON.stringify({ event: "deployments" }) + "\n");
  out.grafanaLinks = await page.$$eval("#section-deployment a[href^='/grafana/']", (as) => as.map((a) => a.getAttribute("href")));
  await page.waitForSelector("text=✔ secured", { timeout: 30000 });
  // Nothing wider than the window (the edges' identities once were).
  out.overflow = await page.evaluate(() => [...document.querySelectorAll(".panel")]
    .filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.textContent.slice(0, 60)));
  await shot("namespace");

  // A failure injected into the demo (the test raises voting's failure
  // rate when told) shows as a drop of voting's success line: counted in
  // the chart redraws it takes, the first of which may have begun before
  // Prometheus scraped a failure.
  const votingLine = () => document.querySelector('[data-chart="success"] path.line[data-name="voting"]');
  const before = await page.evaluate(() => Number(document.querySelector('[data-chart="success"] path.line[data-name="voting"]').dataset.last));
  process.stdout.write(JSON.stringify({ event: "inject" }) + "\n");
  const injectedAt = Date.now();
  out.failure = await page.evaluate(async ([before]) => {
    let seen = document.querySelector('[data-chart="success"] path.line[data-name="voting"]');
    let redraws = 0;
    for (let i = 0; i < 200; i++) {
      await new Promise((r) => setTimeout(r, 150));
      const line = document.querySelector('[data-chart="success"] path.line[data-name="voting"]');
      if (line && line !== seen) {
        seen = line;
        redraws += 1;
        const last = Number(line.dataset.last);
        if (last < before - 0.005) return { before, after: last, redraws };
      }
    }
    return { before, after: Number(seen.dataset.last), redraws, timedOut: true };
  }, [before]);
  out.failure.seconds = (Date.now() - injectedAt) / 1000;
  await shot("namespace-failure");
  process.stdout.write(JSON.stringify({ event: "restore" }) + "\n");

  // Each range redraws the charts from its own range query.
  for (const range of ["900", "3600", "300"]) {
    await page.click(`.charts-bar button[data-range="${range}"]`);
    await page.waitForFunction((r) => document.querySelector(`.charts-bar button[data-range="${r}"]`).classList.contains("active")
      && document.querySelector('[data-chart="rps"] path.line[data-name="web"]'), range, { timeout: 15000 });
  }
  await shot("namespace-charts");

  // A deployment: who calls it, whom it calls, and its live calls; its
  // charts link (where Grafana's would be) opens its page at the charts.
  await page.goto(`${url}/${out.chartLinks.find((h) => h.endsWith("/web?charts")) || `#/namespaces/${NS}/deployment/web`}`);
  await page.waitForSelector("table.calls tbody tr", { timeout: 30000 });
  await page.waitForSelector("table.routes tbody tr", { timeout: 30000 });
  // Callers and callees come once Prometheus has their traffic.
  await page.waitForFunction(() => {
    const names = [...document.querySelectorAll("table.stat tr[data-name]")].map((r) => r.dataset.name);
    return ["vote-bot", "emoji", "voting"].every((n) => names.includes(n));
  }, null, { timeout: 60000 });
  await page.waitForSelector('[data-chart="callees-rps"] path.line', { timeout: 60000 });
  out.detail = {
    graph: {
      nodes: await page.$$eval("#graph g.node", (gs) => gs.map((g) => g.dataset.name)),
      edges: await page.$$eval("#graph path.edge", (ps) => ps.map((p) => `${p.dataset.src} -> ${p.dataset.dst}`)),
    },
    charts: await page.$$eval("#charts path.line", (ps) => ps.map((p) => `${p.closest(".chart").dataset.chart} ${p.dataset.name}`)),
    stat: await cells("table.stat tbody tr"),
    calls: await page.$$eval("table.calls tbody tr", (rows) => rows.map((r) => [...r.children].map((td) => td.textContent))),
    secured: await page.$$eval("td.secured", (tds) => tds.length),
    routes: await page.$$eval("table.routes tbody tr", (rows) => rows.map((r) => [...r.children].map((td) => td.textContent))),
  };
  // The routes of web's ServiceProfile (the demo's), once Prometheus has
  // counted a vote on its route.
  await page.waitForFunction(() => {
    const vote = document.querySelector('table.profile-routes tr[data-route="GET /api/vote"] td[data-col="rps"]');
    return vote && vote.textContent !== "-";
  }, null, { timeout: 60000 });
  out.detail.profileRoutes = await page.$$eval("table.profile-routes tbody tr", (rows) => rows.map((r) => [...r.children].map((td) => td.textContent)));

  await shot("deployment");

  // The routes vote-bot calls, by web-svc's profile: what it saw
  // (effective) beside what its proxy sent (actual).
  await page.goto(`${url}/#/namespaces/${NS}/deployment/vote-bot`);
  await page.waitForFunction(() => {
    const cell = document.querySelector('table.called-routes tr[data-route="GET /api/vote"] td[data-col="actual_rps"]');
    return cell && cell.textContent !== "-";
  }, null, { timeout: 60000 });
  out.calledRoutes = await page.$$eval("table.called-routes tbody tr", (rows) => rows.map((r) => {
    const o = { route: r.dataset.route, service: r.dataset.service };
    for (const td of r.querySelectorAll("td[data-col]")) o[td.dataset.col] = td.textContent;
    return o;
  }));
  await shot("vote-bot");

  // Tap without parameters starts in the namespace just looked at, and its
  // placeholders say they are examples.
  await page.goto(`${url}/#/tap`);
  out.tapDefaultNamespace = await page.inputValue("input[name=namespace]");
  out.tapPlaceholders = await page.$$eval("form.filters input", (is) => is.map((i) => i.placeholder).filter((p) => p));

  // Tap: start, see live requests, stop.
  await page.goto(`${url}/#/tap?namespace=${NS}&resource=deploy/web`);
  await page.click("#tap-start");
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#tap-events tbody tr")];
    return rows.filter((r) => /^\d+/.test(r.children[4].textContent)).length >= 5;
  }, null, { timeout: 30000 });
  out.tap = await page.$$eval("#tap-events tbody tr", (rows) => rows.slice(0, 20).map((r) => [...r.children].map((td) => td.textContent)));
  await shot("tap");
  await page.click("#tap-start");
  out.tapStatus = await page.textContent("#tap-status");

  // Top.
  await page.goto(`${url}/#/top?namespace=${NS}&resource=deploy/web`);
  await page.click("#tap-start");
  await page.waitForSelector("table.calls tbody tr", { timeout: 30000 });
  out.top = await page.$$eval("table.calls tbody tr", (rows) => rows.map((r) => [...r.children].map((td) => td.textContent)));
  await shot("top");
  await page.click("#tap-start");

  // The control plane.
  await page.goto(`${url}/#/controlplane`);
  await page.waitForSelector(".card .value", { timeout: 30000 });
  await page.waitForSelector("#check-verdict", { timeout: 30000 });
  out.controlPlane = await page.$$eval(".card", (cs) => cs.map((c) => c.textContent));
  out.checks = {
    verdict: await page.textContent("#check-verdict"),
    lines: await page.$$eval("ul.checks li", (lis) => lis.map((li) => `${li.dataset.result} ${li.textContent}`)),
  };
  await shot("controlplane");

  // A dashboard with a Grafana (GRAFANA_DASHBOARD_URL, the same public
  // API): its links go to the matching linkerd-<kind> dashboard with the
  // variables set, and Grafana is reached through the dashboard.
  const grafanaUrl = process.env.GRAFANA_DASHBOARD_URL;
  if (grafanaUrl) {
    await page.goto(`${grafanaUrl}/#/namespaces/${NS}`);
    await page.waitForSelector("#section-deployment a[href^='/grafana/']", { timeout: 30000 });
    out.withGrafana = {
      links: await page.$$eval("#section-deployment a[href^='/grafana/']", (as) => as.map((a) => a.getAttribute("href"))),
      chartLinks: await page.$$eval("a.charts-link", (as) => as.length),
    };
    await page.goto(`${grafanaUrl}/#/namespaces/${NS}/deployment/web`);
    await page.waitForSelector("h1 a.title-link", { timeout: 30000 });
    const title = await page.getAttribute("h1 a.title-link", "href");
    out.withGrafana.title = title;
    out.withGrafana.followed = await page.evaluate(async (href) => (await fetch(href)).text(), title);
  }

  out.problems = problems;
  await browser.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
