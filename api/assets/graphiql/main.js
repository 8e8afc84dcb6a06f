// GraphiQL for Tally, served by Tally with every asset (no CDN). Reads ?q= (query),
// ?variables= and ?headers= from the address, as Strawberry's page does.
(function () {
  const EXAMPLE_QUERY = `# Tally's GraphQL API. Paste a token (make run prints them) into
# Headers below as {"Authorization": "Bearer tly_…"}, then run with Ctrl-Enter.
#
# Live balances: run the subscription at the end; it uses the same header.

query Overview {
  viewer { name role }
  account {
    name
    timezone
    balance { total subscriptionCredits purchasedCredits periodEnd }
    usage(granularity: MONTH) {
      start
      end
      totals { segments segmentsSent segmentsReceived }
    }
  }
  segmentInfo(body: "Hello, ça va?") { encoding segments credits }
}

subscription Balance {
  balanceChanged { balance { total } entries { kind credits balanceAfter } }
}
`;
  const parameters = new URLSearchParams(location.search);
  const url = location.href.split("?")[0].split("#")[0];
  const subscriptionUrl = url.replace(/^http/, "ws");

  function updateURL(name, value) {
    if (value) parameters.set(name, value);
    else parameters.delete(name);
    history.replaceState(null, "", `?${parameters}`);
  }

  // Browsers cannot set websocket headers: the editor's Authorization goes into
  // connection_init instead, so one fetcher per token.
  const fetchers = new Map();
  function fetcher(params, options) {
    const headers = options?.headers ?? {};
    const authorization = headers.Authorization ?? headers.authorization ?? "";
    if (!fetchers.has(authorization)) {
      fetchers.set(
        authorization,
        GraphiQL.createFetcher({ url, subscriptionUrl, wsConnectionParams: { authorization } }),
      );
    }
    return fetchers.get(authorization)(params, options);
  }

  function TallyGraphiQL() {
    return React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: EXAMPLE_QUERY,
      query: parameters.get("q") ?? undefined,
      variables: parameters.get("variables") ?? undefined,
      headers: parameters.get("headers") ?? undefined,
      onEditQuery: (value) => updateURL("q", value),
      onEditVariables: (value) => updateURL("variables", value),
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(TallyGraphiQL),
  );
})();
