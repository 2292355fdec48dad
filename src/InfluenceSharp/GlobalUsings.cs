global using TorchSharp;
global using InfluenceSharp.Formats;
