import { mount } from 'svelte';
import './theme.css';
import './app.css';
import App from './App.svelte';

const saved = localStorage.getItem('og.theme');
if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
else document.documentElement.dataset.theme = matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark';

mount(App, { target: document.getElementById('app')! });
