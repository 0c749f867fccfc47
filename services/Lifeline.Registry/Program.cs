using Lifeline.Registry;

var app = RegistryApplication.Build(args);
await app.RunAsync();
