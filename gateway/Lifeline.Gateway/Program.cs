using Lifeline.Gateway;

var app = GatewayApplication.Build(args);
await app.RunAsync();
